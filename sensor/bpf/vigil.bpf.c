// SPDX-License-Identifier: GPL-2.0
//
// Vigil sensor eBPF programs: process exec/exit and TCP connect/accept
// flows, delivered to userspace through ring buffers.
//
// Built by sensor/build.rs with `clang -target bpf -O2 -g`: no vmlinux.h,
// no libbpf headers. The kernel structs below declare only the fields read,
// with `preserve_access_index`, so every field access is a CO-RE relocation
// that the loader (aya) resolves against /sys/kernel/btf/vmlinux: the
// offsets written here do not matter, the names and types do.
//
// Record layouts are mirrored by sensor/src/collect/ebpf/record.rs; change
// both together (the ABI version below is checked by the loader).

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int s32;
typedef unsigned long long u64;
typedef long long s64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define CORE __attribute__((preserve_access_index))
#define __always_inline inline __attribute__((always_inline))

// ---------- helpers (ids from include/uapi/linux/bpf.h) ----------

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, u32 size, const void *src) = (void *)115;
static long (*bpf_ringbuf_output)(void *rb, void *data, u64 size, u64 flags) = (void *)130;
static void *(*bpf_ringbuf_reserve)(void *rb, u64 size, u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, u64 flags) = (void *)132;
static u64 (*bpf_ringbuf_query)(void *rb, u64 flags) = (void *)134;
static long (*bpf_loop)(u32 nr_loops, void *callback_fn, void *callback_ctx, u64 flags) = (void *)181;

#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0
#define BPF_RB_RING_SIZE 1

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27

// Read one kernel field with a CO-RE relocated address.
#define READ(dst, src) \
	bpf_probe_read_kernel(&(dst), sizeof(dst), __builtin_preserve_access_index(&(src)))
// CO-RE byte offset of a field.
#define FIELD_OFF(type, field) __builtin_preserve_field_info(((type *)0)->field, 0)

// ---------- kernel types (only what is read) ----------

struct qstr {
	union {
		struct {
			u32 hash;
			u32 len;
		};
		u64 hash_len;
	};
	const unsigned char *name;
} CORE;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} CORE;

struct vfsmount {
	struct dentry *mnt_root;
} CORE;

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} CORE;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} CORE;

struct file {
	struct path f_path;
} CORE;

struct fs_struct {
	struct path pwd;
} CORE;

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
} CORE;

struct ns_common {
	unsigned int inum;
} CORE;

struct net {
	struct ns_common ns;
} CORE;

struct nsproxy {
	struct net *net_ns;
} CORE;

typedef struct {
	u32 val;
} kuid_t;

struct cred {
	kuid_t uid;
	kuid_t euid;
} CORE;

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct task_struct *real_parent;
	const struct cred *real_cred;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct nsproxy *nsproxy;
	u64 start_boottime;
} CORE;

// Read whole (its kernel members are a union; `s6_addr` is a macro).
struct in6_addr {
	u8 bytes[16];
};

typedef struct {
	struct net *net;
} possible_net_t;

// In the kernel these sit in anonymous unions; declared flat here because
// the loader matches named fields through the kernel's anonymous members
// but not through local ones.
struct sock_common {
	u32 skc_daddr;
	u32 skc_rcv_saddr;
	u16 skc_dport;
	u16 skc_num;
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} CORE;

struct sock {
	struct sock_common __sk_common;
	u16 sk_protocol;
} CORE;

// ---------- maps ----------

// Process records (exec, exit). The size is set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} PROC_EVENTS SEC(".maps");

// Connect/accept records. The size is set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} NET_EVENTS SEC(".maps");

// [0]: network-namespace inode to keep (0 = all).
// [1]: non-zero to report inbound connections when their handshake
//      completes (KIND_HANDSHAKE), set by the loader when neither accept
//      program could attach.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} CONFIG SEC(".maps");

// Records lost because a ring buffer was full: [0] process, [1] network.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} LOST SEC(".maps");

#define SCRATCH_SIZE 32768
// Offsets into the data area are masked with this, so every write below
// stays inside the scratch buffer whatever the verifier thinks `off` is.
#define DATA_MASK 0x3fff
#define NAME_MAX_READ 256
// A path longer than this (bytes) is marked truncated (MAX_STRING).
#define PATH_BUDGET 4096
#define PATH_DEPTH 64
// argv bytes captured; longer command lines are flagged so userspace reads
// /proc/<pid>/cmdline instead.
#define ARGV_CAP 12288

// Sockets between connect(2) (CLOSE -> SYN_SENT, in the caller's context)
// and the end of the handshake: socket address -> tgid of the caller.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, u32);
} CONNECTING SEC(".maps");

// A listening TCP socket's address, in its namespace.
struct listen_key {
	u32 netns;
	u16 family;
	u16 port; // host order
	u8 addr[16];
};

// Listening sockets -> tgid of the process that called listen(2) (CLOSE ->
// LISTEN runs in its context). Inbound handshakes complete in softirq with
// no process current, so they are attributed through this map; listeners
// opened before the sensor started are not in it (userspace looks those up).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listen_key);
	__type(value, u32);
} LISTENERS SEC(".maps");

// Scratch for one exec record (too big for the 512-byte BPF stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u8[SCRATCH_SIZE]);
} SCRATCH SEC(".maps");

// ---------- records (mirrored in record.rs) ----------

#define ABI_VERSION 1
#define KIND_EXEC 1
#define KIND_EXIT 2
#define KIND_CONNECT 3
#define KIND_ACCEPT 4
#define KIND_HANDSHAKE 5

#define F_ARGV_TRUNC 1
#define F_EXE_TRUNC 2
#define F_CWD_TRUNC 4
#define F_NO_EXE 8
#define F_NO_CWD 16

struct exec_hdr {
	u32 kind;
	u32 tgid;
	u32 ppid;
	u32 uid;
	u64 start_boottime;
	u64 netns;
	u32 argv_full_len;
	u16 exe_len;
	u16 cwd_len;
	u16 argv_len;
	u16 flags;
	u32 abi;
};

struct exit_rec {
	u32 kind;
	u32 tgid;
	u32 ppid;
	u32 exit_code;
	u64 netns;
};

struct net_rec {
	u32 kind;
	u32 tgid;
	u16 family;
	u16 lport;
	u16 rport;
	u16 pad;
	u8 laddr[16];
	u8 raddr[16];
};

#define HDR_SIZE ((u32)sizeof(struct exec_hdr))
#define AF_INET 2
#define AF_INET6 10

// Must be a GPL-compatible license for the probe_read/ringbuf helpers.
char LICENSE[] SEC("license") = "GPL";

static __always_inline void count_lost(u32 which)
{
	u64 *n = bpf_map_lookup_elem(&LOST, &which);
	if (n)
		__sync_fetch_and_add(n, 1);
}

// Wake the reader only when the ring is over half full: userspace drains on
// a short timer anyway, so a busy host costs one wakeup per timer tick, not
// one per event.
static __always_inline u64 wakeup_flags(void *ring)
{
	u64 avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	u64 size = bpf_ringbuf_query(ring, BPF_RB_RING_SIZE);
	return avail > size / 2 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline u64 netns_of(struct task_struct *t)
{
	struct nsproxy *ns = 0;
	struct net *net = 0;
	unsigned int inum = 0;
	READ(ns, t->nsproxy);
	if (!ns)
		return 0;
	READ(net, ns->net_ns);
	if (!net)
		return 0;
	READ(inum, net->ns.inum);
	return inum;
}

// True when the task's namespace is the one this sensor watches.
static __always_inline int wanted(u64 netns)
{
	u32 zero = 0;
	u64 *want = bpf_map_lookup_elem(&CONFIG, &zero);
	return !want || *want == 0 || *want == netns;
}

// State of one path walk. It lives in the scratch map, not on the stack:
// the verifier does not track map contents, so every step starts from the
// same (unknown, masked) state and bpf_loop's callback is verified once,
// instead of once per possible value of `off`.
struct walk {
	u64 dentry;
	u64 mount;
	u64 mnt_off;
	u32 off;
	u32 start;
	u16 result;
	u16 trunc;
};

#define WALK_AT (SCRATCH_SIZE - 64)

// One step of a path walk (see walk_path): emit a component, or cross a
// mount point; 1 ends the walk.
static long walk_step(u64 index, void *unused)
{
	u32 zero = 0;
	u8 *buf = bpf_map_lookup_elem(&SCRATCH, &zero);
	if (!buf)
		return 1;
	struct walk *w = (struct walk *)(buf + WALK_AT);
	struct dentry *d = (struct dentry *)w->dentry;
	struct mount *m = (struct mount *)w->mount;
	struct vfsmount *vfs = (struct vfsmount *)(w->mount + w->mnt_off);
	struct dentry *parent = 0, *root = 0;
	READ(parent, d->d_parent);
	READ(root, vfs->mnt_root);
	if (d == root) {
		struct mount *up = 0;
		READ(up, m->mnt_parent);
		if (up == m || !up)
			return 1; // the namespace's root mount
		READ(d, m->mnt_mountpoint);
		w->dentry = (u64)d;
		w->mount = (u64)up;
		return 0;
	}
	if (d == parent || !d)
		return 1; // a filesystem root outside any mount (escaped)
	u32 off = w->off & DATA_MASK;
	if (off - w->start >= PATH_BUDGET) {
		w->result = w->trunc;
		return 1;
	}
	const unsigned char *name = 0;
	READ(name, d->d_name.name);
	long n = bpf_probe_read_kernel_str(buf + HDR_SIZE + off, NAME_MAX_READ, name);
	if (n <= 0) {
		w->result = w->trunc;
		return 1;
	}
	w->off = (off + n) & DATA_MASK;
	w->dentry = (u64)parent;
	return 0;
}

// Write the path of (mnt, dentry) into the data area at *off, one
// NUL-terminated component at a time, leaf first (userspace reverses them),
// crossing mount points as d_path does. Returns 0, or `trunc` when it gave
// up (too deep or too long).
static __always_inline u16 walk_path(u8 *buf, u32 *off, struct vfsmount *vfs, struct dentry *d,
				     u16 trunc)
{
	struct walk *w = (struct walk *)(buf + WALK_AT);
	w->dentry = (u64)d;
	w->mnt_off = FIELD_OFF(struct mount, mnt);
	w->mount = (u64)vfs - w->mnt_off;
	w->off = *off;
	w->start = *off;
	w->result = 0;
	w->trunc = trunc;
	long steps = bpf_loop(PATH_DEPTH, walk_step, 0, 0);
	*off = w->off & DATA_MASK;
	if (steps >= PATH_DEPTH)
		return trunc;
	return w->result;
}

SEC("tp_btf/sched_process_exec")
int vigil_exec(u64 *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	u64 netns = netns_of(t);
	if (!wanted(netns))
		return 0;
	u32 zero = 0;
	u8 *buf = bpf_map_lookup_elem(&SCRATCH, &zero);
	if (!buf)
		return 0;
	struct exec_hdr *h = (struct exec_hdr *)buf;
	u8 *data = buf + HDR_SIZE;
	struct task_struct *parent = 0;
	const struct cred *cred = 0;
	struct mm_struct *mm = 0;
	struct fs_struct *fs = 0;
	h->kind = KIND_EXEC;
	h->abi = ABI_VERSION;
	h->tgid = bpf_get_current_pid_tgid() >> 32;
	h->netns = netns;
	h->flags = 0;
	h->ppid = 0;
	READ(parent, t->real_parent);
	if (parent)
		READ(h->ppid, parent->tgid);
	h->uid = 0;
	READ(cred, t->real_cred);
	if (cred)
		READ(h->uid, cred->euid.val);
	h->start_boottime = 0;
	READ(h->start_boottime, t->start_boottime);
	READ(mm, t->mm);
	READ(fs, t->fs);

	u32 off = 0;
	struct file *exe = 0;
	if (mm)
		READ(exe, mm->exe_file);
	if (exe) {
		struct vfsmount *vfs = 0;
		struct dentry *d = 0;
		READ(vfs, exe->f_path.mnt);
		READ(d, exe->f_path.dentry);
		h->flags |= walk_path(buf, &off, vfs, d, F_EXE_TRUNC);
	} else {
		h->flags |= F_NO_EXE;
	}
	u32 exe_len = off;
	if (fs) {
		struct vfsmount *vfs = 0;
		struct dentry *d = 0;
		READ(vfs, fs->pwd.mnt);
		READ(d, fs->pwd.dentry);
		h->flags |= walk_path(buf, &off, vfs, d, F_CWD_TRUNC);
	} else {
		h->flags |= F_NO_CWD;
	}
	u32 cwd_len = off - exe_len;

	unsigned long arg_start = 0, arg_end = 0;
	if (mm) {
		READ(arg_start, mm->arg_start);
		READ(arg_end, mm->arg_end);
	}
	u64 full = arg_end > arg_start ? arg_end - arg_start : 0;
	u64 len = full;
	if (len > ARGV_CAP) {
		len = ARGV_CAP;
		h->flags |= F_ARGV_TRUNC;
	}
	off &= DATA_MASK;
	if (len > 0 && bpf_probe_read_user(data + off, len, (void *)arg_start) < 0) {
		len = 0;
		h->flags |= F_ARGV_TRUNC;
	}
	h->argv_full_len = full > 0xffffffff ? 0xffffffff : full;
	h->exe_len = exe_len;
	h->cwd_len = cwd_len;
	h->argv_len = len;
	u64 size = HDR_SIZE + off + len;
	if (size > SCRATCH_SIZE)
		size = SCRATCH_SIZE;
	if (bpf_ringbuf_output(&PROC_EVENTS, buf, size, wakeup_flags(&PROC_EVENTS)) < 0)
		count_lost(0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int vigil_exit(u64 *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	u64 id = bpf_get_current_pid_tgid();
	if ((u32)id != (u32)(id >> 32))
		return 0; // a thread, not the thread-group leader
	u64 netns = netns_of(t);
	if (!wanted(netns))
		return 0;
	struct exit_rec *r = bpf_ringbuf_reserve(&PROC_EVENTS, sizeof(*r), 0);
	if (!r) {
		count_lost(0);
		return 0;
	}
	struct task_struct *parent = 0;
	r->kind = KIND_EXIT;
	r->tgid = id >> 32;
	r->netns = netns;
	r->ppid = 0;
	READ(parent, t->real_parent);
	if (parent)
		READ(r->ppid, parent->tgid);
	r->exit_code = 0;
	READ(r->exit_code, t->exit_code);
	bpf_ringbuf_submit(r, wakeup_flags(&PROC_EVENTS));
	return 0;
}

// ---------- TCP connect / accept attribution ----------

// One TCP socket with the process in whose context it was connected or
// accepted; dropped unless the socket's namespace is the watched one.
static __always_inline void emit_flow(struct sock *sk, u32 kind, u32 tgid)
{
	u16 family = 0;
	READ(family, sk->__sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	struct net *net = 0;
	unsigned int inum = 0;
	READ(net, sk->__sk_common.skc_net.net);
	if (net)
		READ(inum, net->ns.inum);
	if (!wanted(inum))
		return;
	struct net_rec *r = bpf_ringbuf_reserve(&NET_EVENTS, sizeof(*r), 0);
	if (!r) {
		count_lost(1);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->tgid = tgid;
	r->family = family;
	READ(r->lport, sk->__sk_common.skc_num);
	READ(r->rport, sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		u32 saddr = 0, daddr = 0;
		READ(saddr, sk->__sk_common.skc_rcv_saddr);
		READ(daddr, sk->__sk_common.skc_daddr);
		__builtin_memcpy(r->laddr, &saddr, 4);
		__builtin_memcpy(r->raddr, &daddr, 4);
	} else {
		struct in6_addr saddr, daddr;
		READ(saddr, sk->__sk_common.skc_v6_rcv_saddr);
		READ(daddr, sk->__sk_common.skc_v6_daddr);
		__builtin_memcpy(r->laddr, saddr.bytes, 16);
		__builtin_memcpy(r->raddr, daddr.bytes, 16);
	}
	bpf_ringbuf_submit(r, wakeup_flags(&NET_EVENTS));
}

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define IPPROTO_TCP 6

// The listening address of `sk` (a listener, or a socket accepted on one,
// whose local address and port are the listener's or, for a wildcard
// listener, one of its addresses). 0 when it is not IPv4/IPv6.
static __always_inline int listen_key_of(struct sock *sk, struct listen_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	u16 family = 0;
	READ(family, sk->__sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct net *net = 0;
	READ(net, sk->__sk_common.skc_net.net);
	if (net)
		READ(k->netns, net->ns.inum);
	k->family = family;
	READ(k->port, sk->__sk_common.skc_num);
	if (family == AF_INET) {
		u32 a = 0;
		READ(a, sk->__sk_common.skc_rcv_saddr);
		__builtin_memcpy(k->addr, &a, 4);
	} else {
		struct in6_addr a;
		READ(a, sk->__sk_common.skc_v6_rcv_saddr);
		__builtin_memcpy(k->addr, a.bytes, 16);
	}
	return 1;
}

// The process that opened the listener `child` was accepted on (exact
// address first, then the family's wildcard), or 0.
static __always_inline u32 listener_tgid(struct sock *child)
{
	struct listen_key k;
	if (!listen_key_of(child, &k))
		return 0;
	u32 *tgid = bpf_map_lookup_elem(&LISTENERS, &k);
	if (tgid)
		return *tgid;
	__builtin_memset(k.addr, 0, sizeof(k.addr));
	tgid = bpf_map_lookup_elem(&LISTENERS, &k);
	return tgid ? *tgid : 0;
}

// connect(2) moves a socket CLOSE -> SYN_SENT in the caller's context, but
// before the local port is chosen: remember the caller, and emit the flow
// when the socket leaves SYN_SENT (established or failed), when its
// addresses are all known. ctx = {sk, oldstate, newstate}.
//
// Inbound: an accepted socket goes SYN_RECV -> ESTABLISHED when the
// client's ACK arrives, in softirq (no process is current): the record
// carries the tgid that opened the listener (LISTENERS), 0 if unknown, in
// which case userspace gives it the listening socket's owner. Reported only
// when CONFIG[1] says no accept program runs.
SEC("tp_btf/inet_sock_set_state")
int vigil_connect(u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int old = (int)ctx[1], new = (int)ctx[2];
	u16 proto = 0;
	READ(proto, sk->sk_protocol);
	if (proto != IPPROTO_TCP)
		return 0;
	u64 key = (u64)sk;
	if (old == TCP_SYN_RECV && new == TCP_ESTABLISHED) {
		u32 one = 1;
		u64 *on = bpf_map_lookup_elem(&CONFIG, &one);
		if (on && *on)
			emit_flow(sk, KIND_HANDSHAKE, listener_tgid(sk));
		return 0;
	}
	// A listener closing is LISTEN -> CLOSE; a socket cloned from it for
	// a new connection goes LISTEN -> SYN_RECV (its state starts as the
	// listener's) and must not remove the listener's entry.
	if (new == TCP_LISTEN || (old == TCP_LISTEN && new == TCP_CLOSE)) {
		struct listen_key k;
		if (!listen_key_of(sk, &k))
			return 0;
		if (new == TCP_LISTEN) {
			u32 tgid = bpf_get_current_pid_tgid() >> 32;
			bpf_map_update_elem(&LISTENERS, &k, &tgid, 0);
		} else {
			bpf_map_delete_elem(&LISTENERS, &k);
		}
		return 0;
	}
	if (old == TCP_CLOSE && new == TCP_SYN_SENT) {
		u32 tgid = bpf_get_current_pid_tgid() >> 32;
		bpf_map_update_elem(&CONNECTING, &key, &tgid, 0);
		return 0;
	}
	if (old != TCP_SYN_SENT)
		return 0;
	u32 *caller = bpf_map_lookup_elem(&CONNECTING, &key);
	if (!caller)
		return 0;
	u32 tgid = *caller;
	bpf_map_delete_elem(&CONNECTING, &key);
	emit_flow(sk, KIND_CONNECT, tgid);
	return 0;
}

// After inet_csk_accept returns the new socket, in the accepting process's
// context: ctx = {sk, arg, return value}.
SEC("fexit/inet_csk_accept")
int vigil_accept(u64 *ctx)
{
	struct sock *newsk = (struct sock *)ctx[2];
	if (newsk)
		emit_flow(newsk, KIND_ACCEPT, bpf_get_current_pid_tgid() >> 32);
	return 0;
}

// The registers a kretprobe sees. Only x86-64's return register is named:
// on another architecture the CO-RE relocation of `ax` fails, the loader
// poisons that one instruction, this program alone is refused and accepts
// fall back to the /proc scan (the rest of the object is unaffected).
struct pt_regs {
	unsigned long ax;
} CORE;

// The same as vigil_accept where BPF trampolines are refused (fexit gets
// EPERM on some VM kernels): a kretprobe also runs in the accepting
// process's context when inet_csk_accept returns the new socket. The
// handshake itself (SYN_RECV -> ESTABLISHED) completes in softirq, where
// no process is current, so that transition cannot attribute an accept.
SEC("kretprobe/inet_csk_accept")
int vigil_accept_ret(struct pt_regs *ctx)
{
	struct sock *newsk = (struct sock *)ctx->ax;
	if (newsk)
		emit_flow(newsk, KIND_ACCEPT, bpf_get_current_pid_tgid() >> 32);
	return 0;
}
