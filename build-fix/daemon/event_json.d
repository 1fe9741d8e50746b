build-fix/daemon/event_json.o: daemon/event_json.c daemon/event.h \
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
