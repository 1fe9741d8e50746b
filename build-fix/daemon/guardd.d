build-fix/daemon/guardd.o: daemon/guardd.c model/classifier.h \
 model/conversation.h model/model.h model/weights.h model/prompt.h \
 model/tokenizer.h model/errmsg.h daemon/log.h daemon/settings.h \
 model/conversation.h model/weights.h model/prompt.h daemon/metrics.h \
 daemon/mockbroker.h daemon/notify.h daemon/pipeline.h
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
model/errmsg.h:
daemon/log.h:
daemon/settings.h:
model/conversation.h:
model/weights.h:
model/prompt.h:
daemon/metrics.h:
daemon/mockbroker.h:
daemon/notify.h:
daemon/pipeline.h:
