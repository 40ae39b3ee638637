int vcm_dummy(void){return 0;}
