build-fix/model/prompt_format.o: model/prompt_format.c model/errmsg.h \
 model/prompt_format.h model/prompt.h model/conversation.h \
 model/tokenizer.h
model/errmsg.h:
model/prompt_format.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
