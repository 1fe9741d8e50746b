build-fix/daemon/batcher.o: daemon/batcher.c daemon/pipeline_int.h \
 daemon/pipeline.h model/classifier.h model/conversation.h model/model.h \
 model/weights.h model/prompt.h model/tokenizer.h daemon/settings.h \
 model/conversation.h model/weights.h model/prompt.h daemon/event.h \
 daemon/offsets.h daemon/queue.h daemon/stall.h daemon/log.h \
 daemon/metrics.h daemon/notify.h
daemon/pipeline_int.h:
daemon/pipeline.h:
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
daemon/settings.h:
model/conversation.h:
model/weights.h:
model/prompt.h:
daemon/event.h:
daemon/offsets.h:
daemon/queue.h:
daemon/stall.h:
daemon/log.h:
daemon/metrics.h:
daemon/notify.h:
