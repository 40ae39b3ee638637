import FuzzMain

fuzzMain("lora")
