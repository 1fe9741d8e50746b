build-fix/daemon/ctl_tail.o: daemon/ctl_tail.c daemon/ctl.h \
 daemon/event.h model/conversation.h model/classifier.h \
 model/conversation.h model/model.h model/weights.h model/prompt.h \
 model/tokenizer.h daemon/kafka_util.h daemon/settings.h model/weights.h \
 model/prompt.h
daemon/ctl.h:
daemon/event.h:
model/conversation.h:
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
daemon/kafka_util.h:
daemon/settings.h:
model/weights.h:
model/prompt.h:
