int vcmedia_dummy(void);
