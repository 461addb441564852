vcl 4.1;

# Varnish 7 in front of the Fractal webserver: the edge cache of its public reads, purged by tag.
# Needs varnish-modules (vmod xkey): Debian `apt-get install varnish varnish-modules`.
#
#   varnishd -a :6081 -f /etc/varnish/default.vcl -s malloc,256m
#
# Settings (edit this file, or render a copy before loading it; test/edge/varnish.test.ts and bench/edge.ts
# do that by replacing the first host and port assignments, which must stay those of `backend default`):
# - Backend: the host and port of `backend default` below, 127.0.0.1 and 3000 (`npm start`) as shipped, e.g.
#     sed -e '/^backend default/,/^}/{s/127\.0\.0\.1/10.0.1.5/;s/3000/8080/}' default.vcl > /etc/varnish/default.vcl
#   Its /healthz is probed every 5 s; while it is sick, stale copies are served without asking it.
# - CORS: the pattern of allowed origins in vcl_recv (`req.http.Origin !~ ...`), the same as the app's
#   CORS_ORIGINS (https://app.fractal.co as shipped): every other Origin is dropped before the lookup.
# - Purgers: the addresses in `acl purgers` (localhost as shipped) may send PURGE; every other one gets 403.
#   Add the web processes' addresses (or their subnet) when they run on other hosts.
# - The app: CACHE_PURGER=varnish and VARNISH_PURGE_URLS=http://<this varnish>:6081 (every Varnish, comma
#   separated); TRUST_PROXY=<this Varnish's address> so that rate limits, logs and geolocation see the
#   client from X-Forwarded-For (which Varnish sets) instead of Varnish.
#
# What it does with the app's headers (plugins/edge-cache.ts):
# - Stores GET/HEAD requests without Authorization; their Cookie is dropped before lookup and any
#   Set-Cookie of their answers is dropped before storing. Every request with Authorization, and every
#   other method, is passed to the app untouched and never stored.
# - Never stores `no-store`, `no-cache` or `private` answers (the app sends `private, no-store` or `no-store`
#   on everything that is not a declared public read, and on 5xx and 429).
# - Freshness: `Surrogate-Control: max-age=N`, else `CDN-Cache-Control: max-age=N`, else `s-maxage`, else
#   `max-age`. Grace: the larger of `stale-while-revalidate` and `stale-if-error`. A stale copy within
#   stale-while-revalidate is served while one background fetch refreshes it. Beyond that, the request
#   waits for the app, and if the app is down, times out or answers 5xx, the stale copy is served
#   (stale-if-error) until its grace ends.
# - Tags: the `xkey` header (the app also sends the same list as `Surrogate-Key`, used when xkey is absent).
#     PURGE / with `xkey-purge: tag1 tag2`  ->  xkey.purge (hard): 200 {"purged": <objects>}
#     PURGE / with `x-purge-all: 1`        ->  bans everything:  200 {"purged": "all"}
#     any other PURGE -> 400; a PURGE from outside `acl purgers` -> 403.
# - Clients never see xkey, Surrogate-Key or Surrogate-Control; they get `X-Cache: HIT|MISS` and `Age`.

import std;
import xkey;

probe healthz {
    .url = "/healthz";
    .interval = 5s;
    .timeout = 2s;
    .window = 5;
    .threshold = 3;
    # Healthy from the start: no 503s while the first polls come in.
    .initial = 3;
}

backend default {
    .host = "127.0.0.1";
    .port = "3000";
    .probe = healthz;
    .connect_timeout = 2s;
    .first_byte_timeout = 30s;
    # Server-sent events (GET /v1/jobs/{id}/events, passed) get a keep-alive comment well within this.
    .between_bytes_timeout = 60s;
}

acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    # X-Fr-Refresh / X-Fr-Stale are this file's own markers across restarts: never a client's.
    if (req.restarts == 0) {
        unset req.http.X-Fr-Refresh;
        unset req.http.X-Fr-Stale;
    }

    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (req.http.xkey-purge ~ "\S") {
            set req.http.X-Fr-Purged = xkey.purge(req.http.xkey-purge);
            return (synth(200, "Purged"));
        }
        if (req.http.x-purge-all == "1") {
            if (std.ban("obj.status != 0")) {
                set req.http.X-Fr-Purged = "all";
                return (synth(200, "Purged"));
            }
            return (synth(500, "Ban failed: " + std.ban_error()));
        }
        return (synth(400, "A PURGE needs an xkey-purge header (space-separated tags) or x-purge-all: 1"));
    }

    # Writes and anything authenticated go to the app as they are, and are never stored.
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    if (req.http.Authorization) {
        return (pass);
    }

    # A public read: the app uses no cookies, and one would only split the cache.
    unset req.http.Cookie;
    # The app's answers vary on Origin (an allowed origin gets its own Access-Control-Allow-Origin). It answers
    # any other origin as it answers none (no CORS header), so those share the copy without Origin instead of
    # one copy each per made-up Origin. Keep this pattern in step with the app's CORS_ORIGINS: an origin
    # missing here gets no CORS header through this Varnish, one too many changes nothing (the app refuses it).
    if (req.http.Origin !~ "^https://app\.fractal\.co$") {
        unset req.http.Origin;
    }
    # Restarted by vcl_hit: fetch a fresh copy, leaving the stale one in place should the fetch fail.
    # (Set either way: the flag survives a restart.)
    if (req.http.X-Fr-Refresh) {
        set req.hash_always_miss = true;
    } else {
        set req.hash_always_miss = false;
    }
    return (hash);
}

sub vcl_hit {
    if (obj.ttl >= 0s) {
        return (deliver);
    }
    # Stale from here on (obj.ttl < 0s, within its grace).
    # The app failed on the fetch that vcl_hit asked for below, or is known to be down: stale-if-error.
    if (req.http.X-Fr-Stale || !std.healthy(req.backend_hint)) {
        return (deliver);
    }
    # stale-while-revalidate: serve it, Varnish refreshes it with one background fetch.
    if (obj.ttl + std.duration(obj.http.X-Fr-Swr + "s", 0s) > 0s) {
        return (deliver);
    }
    # Beyond stale-while-revalidate: wait for a fresh copy; vcl_synth comes back for this one on failure.
    set req.http.X-Fr-Refresh = "1";
    return (restart);
}

sub vcl_backend_response {
    # Passed (Authorization, or not a GET/HEAD): untouched, never stored.
    if (bereq.uncacheable) {
        return (deliver);
    }

    # The app failed while a stale copy exists (background refresh, or the refresh of vcl_hit): keep the
    # copy. A background fetch just ends; the waiting client of a refresh is sent the copy by vcl_synth.
    if (beresp.status >= 500 && (bereq.is_bgfetch || bereq.http.X-Fr-Refresh)) {
        return (abandon);
    }

    unset beresp.http.Set-Cookie;

    if (beresp.status >= 500 ||
        beresp.http.Surrogate-Control ~ "(?i)no-store" ||
        beresp.http.Cache-Control ~ "(?i)(no-store|no-cache|private)" ||
        beresp.http.Vary == "*") {
        # Hit-for-miss: requests for it go straight to the app (not queued behind each other) for 2 minutes.
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
        return (deliver);
    }

    # Freshness at the edge. Varnish has already set beresp.ttl from s-maxage, max-age or Expires;
    # the surrogate-targeted headers win over those.
    if (beresp.http.Surrogate-Control ~ "(?i)(^|[\s,])max-age=\d+") {
        set beresp.ttl = std.duration(regsub(beresp.http.Surrogate-Control, "(?i)^(.*[\s,])?max-age=(\d+).*$", "\2s"), beresp.ttl);
    } else if (beresp.http.CDN-Cache-Control ~ "(?i)(^|[\s,])max-age=\d+") {
        set beresp.ttl = std.duration(regsub(beresp.http.CDN-Cache-Control, "(?i)^(.*[\s,])?max-age=(\d+).*$", "\2s"), beresp.ttl);
    }
    if (beresp.ttl <= 0s) {
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
        return (deliver);
    }

    # Grace: the larger of stale-while-revalidate and stale-if-error (none without them). vcl_hit reads
    # X-Fr-Swr back to tell the two apart; vcl_deliver removes it.
    set beresp.http.X-Fr-Swr = "0";
    if (beresp.http.Cache-Control ~ "(?i)stale-while-revalidate=\d+") {
        set beresp.http.X-Fr-Swr = regsub(beresp.http.Cache-Control, "(?i)^.*stale-while-revalidate=(\d+).*$", "\1");
    }
    set beresp.grace = std.duration(beresp.http.X-Fr-Swr + "s", 0s);
    if (beresp.http.Cache-Control ~ "(?i)stale-if-error=\d+" &&
        std.duration(regsub(beresp.http.Cache-Control, "(?i)^.*stale-if-error=(\d+).*$", "\1s"), 0s) > beresp.grace) {
        set beresp.grace = std.duration(regsub(beresp.http.Cache-Control, "(?i)^.*stale-if-error=(\d+).*$", "\1s"), 0s);
    }

    # xkey indexes the object by its `xkey` header when it is stored.
    if (!beresp.http.xkey && beresp.http.Surrogate-Key) {
        set beresp.http.xkey = beresp.http.Surrogate-Key;
    }
    return (deliver);
}

sub vcl_backend_error {
    # The app is unreachable or timed out while a stale copy exists: keep serving the copy (see above).
    if (bereq.is_bgfetch || bereq.http.X-Fr-Refresh) {
        return (abandon);
    }
    set beresp.http.Content-Type = "application/problem+json";
    set beresp.http.Cache-Control = "no-store";
    set beresp.http.Retry-After = "5";
    set beresp.body = """{"type":"https://docs.fractal.co/problems/unavailable","title":"Service unavailable","status":503,"code":"unavailable","detail":"The service did not answer. Try again shortly."}""";
    return (deliver);
}

sub vcl_synth {
    # The refresh vcl_hit asked for failed: go back for the stale copy (stale-if-error).
    if (resp.status == 503 && req.http.X-Fr-Refresh && !req.http.X-Fr-Stale) {
        unset req.http.X-Fr-Refresh;
        set req.http.X-Fr-Stale = "1";
        return (restart);
    }
    set resp.http.Cache-Control = "no-store";
    if (req.method == "PURGE" && resp.status == 200) {
        set resp.http.Content-Type = "application/json";
        if (req.http.X-Fr-Purged == "all") {
            set resp.body = """{"purged":"all"}""";
        } else {
            set resp.body = """{"purged":""" + req.http.X-Fr-Purged + "}";
        }
        return (deliver);
    }
    set resp.http.Content-Type = "application/problem+json";
    if (resp.status == 400) {
        set resp.http.X-Fr-Code = "bad_request";
    } else if (resp.status == 403) {
        set resp.http.X-Fr-Code = "forbidden";
    } else if (resp.status == 503) {
        set resp.http.X-Fr-Code = "unavailable";
        set resp.http.Retry-After = "5";
    } else {
        set resp.http.X-Fr-Code = "internal";
    }
    # {"type":".../<code>","title":"<reason>","code":"<code>","status":<status>}
    set resp.body = """{"type":"https://docs.fractal.co/problems/""" + resp.http.X-Fr-Code +
        {"","title":""} + resp.reason + {"","code":""} + resp.http.X-Fr-Code +
        {"","status":"} + resp.status + "}";
    unset resp.http.X-Fr-Code;
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
        # The stored request id belongs to the request that filled the cache, not to this one.
        unset resp.http.X-Request-Id;
    } else {
        set resp.http.X-Cache = "MISS";
    }
    unset resp.http.xkey;
    unset resp.http.Surrogate-Key;
    unset resp.http.Surrogate-Control;
    unset resp.http.Cache-Tag;
    unset resp.http.X-Fr-Swr;
}
