import FuzzMain

fuzzMain("tokenizer")
