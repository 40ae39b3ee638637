int vcmedia_dummy(void){return 0;}
