build-fix/daemon/ctl_prompt.o: daemon/ctl_prompt.c daemon/ctl.h \
 model/json_conv.h model/conversation.h model/prompt.h model/tokenizer.h \
 model/prompt_format.h model/prompt.h
daemon/ctl.h:
model/json_conv.h:
model/conversation.h:
model/prompt.h:
model/tokenizer.h:
model/prompt_format.h:
model/prompt.h:
