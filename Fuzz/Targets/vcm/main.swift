import FuzzMain

fuzzMain("vcm")
