build-fix/daemon/ctl_classify.o: daemon/ctl_classify.c model/classifier.h \
 model/conversation.h model/model.h model/weights.h model/prompt.h \
 model/tokenizer.h daemon/ctl.h model/json_conv.h model/prompt.h \
 model/prompt_format.h
model/classifier.h:
model/conversation.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/tokenizer.h:
daemon/ctl.h:
model/json_conv.h:
model/prompt.h:
model/prompt_format.h:
