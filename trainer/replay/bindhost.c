/* Makes the replay server listen on one address instead of every interface.
 *
 * Reverb 0.14's server has no option for its address: it listens on "[::]:PORT"
 * (every interface, IPv4 too). The replay server role is started with this
 * library in LD_PRELOAD and TRAINER_BIND_ADDRESS set to an IPv4 or IPv6
 * literal (trainer/replay/bind.py): a bind() to the wildcard address becomes a
 * bind() to that address (as an IPv4-mapped IPv6 address on gRPC's dual-stack
 * socket). Every other bind() is passed through untouched. The role then reads
 * /proc/net/tcp{,6} to check what it really listens on, and refuses to serve on
 * every interface unless asked to (--bind=all).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static int wanted_v6(const char *host, struct in6_addr *out) {
  struct in_addr v4;
  if (inet_pton(AF_INET, host, &v4) == 1) {
    memset(out, 0, sizeof *out);
    out->s6_addr[10] = 0xff;
    out->s6_addr[11] = 0xff;
    memcpy(&out->s6_addr[12], &v4, sizeof v4);
    return 1;
  }
  return inet_pton(AF_INET6, host, out) == 1;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static bind_fn real_bind;
  if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
  const char *host = getenv("TRAINER_BIND_ADDRESS");
  if (!host || !*host || !addr) return real_bind(fd, addr, len);
  if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 a;
    memcpy(&a, addr, sizeof a);
    if (!IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) return real_bind(fd, addr, len);
    if (!wanted_v6(host, &a.sin6_addr)) {
      errno = EADDRNOTAVAIL;
      return -1;
    }
    return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
  }
  if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    struct sockaddr_in a;
    memcpy(&a, addr, sizeof a);
    if (a.sin_addr.s_addr != htonl(INADDR_ANY)) return real_bind(fd, addr, len);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
      errno = EADDRNOTAVAIL;
      return -1;
    }
    return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
  }
  return real_bind(fd, addr, len);
}
