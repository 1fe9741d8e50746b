build-fix/daemon/settings.o: daemon/settings.c daemon/settings.h \
 model/conversation.h model/weights.h model/prompt.h model/conversation.h \
 model/tokenizer.h model/classifier.h model/model.h model/weights.h \
 model/prompt.h daemon/kafka_util.h
daemon/settings.h:
model/conversation.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
model/classifier.h:
model/model.h:
model/weights.h:
model/prompt.h:
daemon/kafka_util.h:
