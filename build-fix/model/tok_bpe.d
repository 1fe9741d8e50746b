build-fix/model/tok_bpe.o: model/tok_bpe.c model/tok_internal.h \
 model/tokenizer.h
model/tok_internal.h:
model/tokenizer.h:
