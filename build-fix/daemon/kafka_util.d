build-fix/daemon/kafka_util.o: daemon/kafka_util.c \
 daemon/../model/errmsg.h daemon/kafka_util.h daemon/settings.h \
 model/conversation.h model/weights.h model/prompt.h model/conversation.h \
 model/tokenizer.h
daemon/../model/errmsg.h:
daemon/kafka_util.h:
daemon/settings.h:
model/conversation.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
