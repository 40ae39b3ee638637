// Only declares LLVMFuzzerRunDriver (include/CFuzzDriver.h); libFuzzer defines it.
#include "CFuzzDriver.h"
