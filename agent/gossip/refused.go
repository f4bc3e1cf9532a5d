package gossip

import (
	"net"
	"strings"
	"time"
)

// Refusal reasons, as Stats counts them and metrics label them.
const (
	RefusedUnencrypted = "unencrypted"
	RefusedBadKey      = "bad_key"
)

// refusedLogEvery is how often one peer address's refusals are logged.
const refusedLogEvery = time.Minute

// refusal classifies a memberlist log message (prefix stripped) that
// reports traffic dropped for its encryption; "" for any other message.
// memberlist v0.7.0 counts none of these in its metrics, so its log lines
// are the only hook: "Decrypt packet failed: ERR from=ADDR" (UDP) and
// "failed to receive: ERR from=ADDR" (TCP) with ERR one of the errors below.
func refusal(msg string) (reason, from string) {
	switch {
	case strings.HasPrefix(msg, "Decrypt packet failed:"):
		reason = RefusedBadKey
	case !strings.HasPrefix(msg, "failed to receive:"):
		return "", ""
	case strings.Contains(msg, "remote state is not encrypted"):
		reason = RefusedUnencrypted
	case strings.Contains(msg, "could decrypt"), strings.Contains(msg, "encryption version"),
		strings.Contains(msg, "too small to decrypt"), strings.Contains(msg, "decrypt empty payload"):
		reason = RefusedBadKey
	default:
		return "", ""
	}
	if i := strings.LastIndex(msg, "from="); i >= 0 {
		from = msg[i+len("from="):]
	}
	return reason, from
}

// noteRefused counts and logs a refusal, once a minute per address and reason.
func (g *Gossip) noteRefused(msg string) {
	reason, from := refusal(msg)
	if reason == "" {
		return
	}
	g.mu.Lock()
	if reason == RefusedUnencrypted {
		g.stats.RefusedUnencrypted++
	} else {
		g.stats.RefusedBadKey++
	}
	g.mu.Unlock()
	host := from
	if h, _, err := net.SplitHostPort(from); err == nil {
		host = h // a stream comes from an ephemeral port
	}
	if ok, held := g.refusedLog.Allow(host + " " + reason); ok {
		g.log.Warn("gossip: refused traffic from a peer without our key", "from", from, "reason", reason,
			"detail", msg, "refused_since_last_warning", held)
	}
}
