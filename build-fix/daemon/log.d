build-fix/daemon/log.o: daemon/log.c daemon/log.h daemon/settings.h \
 model/conversation.h model/weights.h model/prompt.h model/conversation.h \
 model/tokenizer.h
daemon/log.h:
daemon/settings.h:
model/conversation.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
