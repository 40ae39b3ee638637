import FuzzMain

fuzzMain("zip")
