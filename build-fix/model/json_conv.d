build-fix/model/json_conv.o: model/json_conv.c model/errmsg.h \
 model/json_conv.h model/conversation.h
model/errmsg.h:
model/json_conv.h:
model/conversation.h:
