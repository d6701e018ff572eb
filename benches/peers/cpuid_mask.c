/*
 * An AVX2-only CPU as software sees it, on a CPU that has more: an LD_PRELOAD library
 * that turns on Linux's CPUID faulting (arch_prctl(ARCH_SET_CPUID, 0), Intel CPUs and
 * their virtual machines that pass the feature on) and answers every CPUID the process
 * and its threads execute with the real answer less AVX-512, AVX-VNNI, AVX10 and AMX.
 * Feature detection in every library (rinfer's, PyTorch's, oneDNN's, ONNX Runtime's
 * MLAS) then picks its AVX2 code. The instructions themselves are not disabled: a
 * program that uses AVX-512 without asking CPUID first is not caught.
 *
 * The SIGSEGV handler that serves the faults stays installed: a handler the program
 * installs later (Rust's stack-overflow guard, Python's faulthandler) is kept aside and
 * called for every fault that is not a CPUID (both sigaction() and signal() are
 * intercepted). CPUID_MASK_LOG=1 prints, at exit, how
 * many CPUID queries were answered and how many asked for the feature leaf 7.
 *
 * Used by benches/peers/avx2_only.sh; a bench tool, not part of rinfer.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static sigaction_fn real_sigaction;
static struct sigaction next_action; /* what the program believes is installed */
static atomic_int active;
static atomic_long served, served_leaf7;

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
                  (1u << 30) | (1u << 31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, FP16 23, AMX-TILE 24,
         * AMX-INT8 25 */
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) |
                  (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI 4, AVX512-BF16 5, AMX-FP16 21, AVX-IFMA 23 */
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
        /* EDX: AVX-VNNI-INT8 4, AVX-NE-CONVERT 5, AMX-COMPLEX 8, AVX-VNNI-INT16 10, AVX10 19 */
        r[3] &= ~((1u << 4) | (1u << 5) | (1u << 8) | (1u << 10) | (1u << 19));
    } else if (leaf == 0xd && sub == 0) {
        /* XCR0 components the CPU supports: opmask 5, ZMM_Hi256 6, Hi16_ZMM 7, AMX 17-18 */
        r[0] &= ~((1u << 5) | (1u << 6) | (1u << 7) | (1u << 17) | (1u << 18));
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX tile and AVX10 leaves */
    }
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (atomic_load(&active) && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], r[4];
        /* CPUID faulting is per thread: lift it for this one instruction. */
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        real_cpuid(leaf, sub, r);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        mask(leaf, sub, r);
        g[REG_RAX] = r[0];
        g[REG_RBX] = r[1];
        g[REG_RCX] = r[2];
        g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        atomic_fetch_add(&served, 1);
        if (leaf == 7) atomic_fetch_add(&served_leaf7, 1);
        return;
    }
    struct sigaction next = next_action;
    if (next.sa_flags & SA_SIGINFO) {
        next.sa_sigaction(sig, info, ctx);
    } else if (next.sa_handler != SIG_DFL && next.sa_handler != SIG_IGN) {
        next.sa_handler(sig);
    } else {
        /* Nobody else handles it: die of it as the program would have. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction(SIGSEGV, &dfl, NULL);
    }
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !atomic_load(&active)) return real_sigaction(sig, act, old);
    if (old) *old = next_action;
    if (act) next_action = *act;
    return 0;
}

/* glibc's signal() installs through its internal sigaction, past the one above. */
sighandler_t signal(int sig, sighandler_t handler) {
    if (sig != SIGSEGV || !atomic_load(&active)) {
        struct sigaction act, old;
        memset(&act, 0, sizeof act);
        act.sa_handler = handler;
        act.sa_flags = SA_RESTART;
        sigemptyset(&act.sa_mask);
        if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
        return old.sa_handler;
    }
    sighandler_t old = next_action.sa_flags & SA_SIGINFO ? SIG_DFL : next_action.sa_handler;
    memset(&next_action, 0, sizeof next_action);
    next_action.sa_handler = handler;
    next_action.sa_flags = SA_RESTART;
    return old;
}

static void report(void) {
    fprintf(stderr, "cpuid_mask[%d]: %ld CPUID queries answered, %ld of leaf 7\n", (int)getpid(),
            atomic_load(&served), atomic_load(&served_leaf7));
}

__attribute__((constructor)) static void start(void) {
    real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    real_sigaction(SIGSEGV, &sa, &next_action);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        /* Running unmasked would measure the wrong CPU: refuse. */
        fprintf(stderr, "cpuid_mask: this CPU or kernel has no CPUID faulting; cannot hide AVX-512\n");
        _exit(3);
    }
    atomic_store(&active, 1);
    const char *log = getenv("CPUID_MASK_LOG");
    if (log && *log == '1') atexit(report);
}
