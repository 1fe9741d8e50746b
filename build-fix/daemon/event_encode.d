build-fix/daemon/event_encode.o: daemon/event_encode.c daemon/event.h \
 model/conversation.h model/classifier.h model/conversation.h \
 model/model.h model/weights.h model/prompt.h model/tokenizer.h
daemon/event.h:
model/conversation.h:
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
