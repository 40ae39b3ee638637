import FuzzMain

fuzzMain("safetensors")
