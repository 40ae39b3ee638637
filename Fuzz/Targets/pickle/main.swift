import FuzzMain

fuzzMain("pickle")
