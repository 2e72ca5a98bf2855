# The mqb module for make-based MicroPython ports (unix, ...):
#   make -C ports/unix USER_C_MODULES=/path/to/mqboard/ports/micropython
# It compiles the project's core/ unchanged, with limits set for a microcontroller.
MQB_MOD_DIR := $(USERMOD_DIR)
# Absolute, so that the core's objects land inside the port's build directory.
MQB_ROOT := $(abspath $(MQB_MOD_DIR)/../../..)

SRC_USERMOD_C += $(MQB_MOD_DIR)/modmqb.c $(MQB_MOD_DIR)/trust.c \
	$(MQB_MOD_DIR)/ticker.c
SRC_USERMOD_LIB_C += $(addprefix $(MQB_ROOT)/core/,err.c strbuf.c wire.c engine.c wdt.c boot.c auth.c)

CFLAGS_USERMOD += -I$(MQB_ROOT)/include -DMQB_CHUNK_MAX=4096 -DMQB_MAX_XFERS=2 \
	-DMQB_PATH_MAX=256 -DMQB_WINDOW=4 -DMQB_AUTH_KEYS_MAX=4 -DMQB_AUTH_WINDOW=8 \
	-DMQB_AUTH_CHAINS=2
