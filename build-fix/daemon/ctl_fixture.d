build-fix/daemon/ctl_fixture.o: daemon/ctl_fixture.c daemon/ctl.h \
 model/fixture.h model/model.h model/weights.h model/prompt.h \
 model/conversation.h model/tokenizer.h model/safetensors.h
daemon/ctl.h:
model/fixture.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
model/safetensors.h:
