build-fix/model/tokenizer.o: model/tokenizer.c model/errmsg.h \
 model/tok_internal.h model/tokenizer.h
model/errmsg.h:
model/tok_internal.h:
model/tokenizer.h:
