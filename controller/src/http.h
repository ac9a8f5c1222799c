/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controller's HTTP endpoint (libmicrohttpd, its own thread): /metrics (the last text
 * the main loop published), /healthz (the loop ticked within 10 s), /readyz (serving). The
 * HTTP thread never touches the controller's state. Not for collecting the figures.
 */
#ifndef LOUPE_CONTROLLER_HTTP_H
#define LOUPE_CONTROLLER_HTTP_H

#include <stdbool.h>

struct loupe_http;

/* "127.0.0.1:9761", "[::1]:9761". Returns 0 or -errno. */
int loupe_http_start(const char *addr, struct loupe_http **ret);
void loupe_http_publish(struct loupe_http *h, const char *metrics_text);
void loupe_http_heartbeat(struct loupe_http *h);
void loupe_http_set_ready(struct loupe_http *h, bool ready);
struct loupe_http *loupe_http_stop(struct loupe_http *h);

#endif
