build-fix/model/tok_encode.o: model/tok_encode.c model/errmsg.h \
 model/tok_internal.h model/tokenizer.h
model/errmsg.h:
model/tok_internal.h:
model/tokenizer.h:
