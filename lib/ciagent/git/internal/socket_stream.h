// The TCP connections libgit2 opens for git over HTTP(S), with Nagle's
// algorithm off.
//
// libgit2 1.5 writes an HTTP request's headers and its body in separate
// writes and never sets TCP_NODELAY: the body then waits for the server to
// acknowledge the headers, which a server holding its ACK back for up to
// 40 ms (Linux's delayed ACK; the server has nothing to say before it has
// the body) does. Every POST of a fetch paid that, twice per incremental
// fetch. This stream is libgit2's own plain socket stream (the same
// address resolution, connection order and error classes) with
// TCP_NODELAY set; libgit2's TLS stream runs on top of it too.
//
// It also bounds what libgit2 1.5 leaves unbounded: connecting, and any
// read or write that makes no progress, fail after SetSocketTimeout's
// duration (a network error: the fetch retries it, then kUnavailable).
//
// Process-wide: register once, before the first fetch (InitLibGit2 does);
// the timeout applies to connections opened after it is set.
#ifndef CIAGENT_GIT_INTERNAL_SOCKET_STREAM_H_
#define CIAGENT_GIT_INTERNAL_SOCKET_STREAM_H_

#include <git2.h>
#include <git2/sys/stream.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ciagent {

// Makes NewNoDelaySocketStream libgit2's stream for plain TCP.
absl::Status RegisterNoDelaySocketStream();

// 0 or less: no timeout (libgit2's behaviour).
void SetSocketTimeout(absl::Duration timeout);

// A stream to host:port, not yet connected (git_stream_registration.init).
int NewNoDelaySocketStream(git_stream** out, const char* host,
                           const char* port);

}  // namespace ciagent

#endif  // CIAGENT_GIT_INTERNAL_SOCKET_STREAM_H_
