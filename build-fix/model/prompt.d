build-fix/model/prompt.o: model/prompt.c model/errmsg.h model/prompt.h \
 model/conversation.h model/tokenizer.h
model/errmsg.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
