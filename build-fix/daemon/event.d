build-fix/daemon/event.o: daemon/event.c daemon/event.h \
 model/conversation.h model/classifier.h model/conversation.h \
 model/model.h model/weights.h model/prompt.h model/tokenizer.h \
 daemon/event_mp.h
daemon/event.h:
model/conversation.h:
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
daemon/event_mp.h:
