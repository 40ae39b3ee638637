int vcm_dummy(void);
