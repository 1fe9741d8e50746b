build-fix/model/verdict.o: model/verdict.c model/verdict.h \
 model/conversation.h
model/verdict.h:
model/conversation.h:
