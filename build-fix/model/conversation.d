build-fix/model/conversation.o: model/conversation.c model/conversation.h
model/conversation.h:
