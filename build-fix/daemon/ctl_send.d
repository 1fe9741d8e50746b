build-fix/daemon/ctl_send.o: daemon/ctl_send.c daemon/ctl.h \
 daemon/kafka_util.h daemon/settings.h model/conversation.h \
 model/weights.h model/prompt.h model/conversation.h model/tokenizer.h
daemon/ctl.h:
daemon/kafka_util.h:
daemon/settings.h:
model/conversation.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
