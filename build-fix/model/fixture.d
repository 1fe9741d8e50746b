build-fix/model/fixture.o: model/fixture.c model/errmsg.h model/fixture.h \
 model/model.h model/weights.h model/prompt.h model/conversation.h \
 model/tokenizer.h model/safetensors.h model/prompt_format.h model/bf16.h
model/errmsg.h:
model/fixture.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
model/safetensors.h:
model/prompt_format.h:
model/bf16.h:
