build-fix/tests/check_loader: tests/check_loader.c model/bf16.h \
 model/fixture.h model/model.h model/weights.h model/prompt.h \
 model/conversation.h model/tokenizer.h model/safetensors.h model/model.h
model/bf16.h:
model/fixture.h:
model/model.h:
model/weights.h:
model/prompt.h:
model/conversation.h:
model/tokenizer.h:
model/safetensors.h:
model/model.h:
