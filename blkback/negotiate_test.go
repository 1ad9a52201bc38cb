package blkback

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/xenblk/xenblk/xen"
)

// TestNegotiateTranscripts runs testdata/negotiate.txt: the connection
// negotiate agrees on, or the error, for the keys a frontend published.
// Commands:
//
//	offer [queues=N] [order=N] [persistent] [scsi]
//	                 what this backend advertised (default: 4 queues,
//	                 ring order 4, no persistent grants, no extension)
//	negotiate        one frontend key per line, key=value, relative to
//	                 the frontend's directory; a value of !eacces makes
//	                 reading that key fail; keys not listed are absent
func TestNegotiateTranscripts(t *testing.T) {
	o := offer{maxQueues: 4, maxRingPageOrder: 4}
	datadriven.RunTest(t, "testdata/negotiate.txt", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "offer":
			o = offer{maxQueues: 4, maxRingPageOrder: 4}
			for _, a := range d.CmdArgs {
				switch a.Key {
				case "queues":
					d.ScanArgs(t, "queues", &o.maxQueues)
				case "order":
					d.ScanArgs(t, "order", &o.maxRingPageOrder)
				case "persistent":
					o.persistent = true
				case "scsi":
					o.extraRequest = true
				default:
					d.Fatalf(t, "unknown offer %q", a.Key)
				}
			}
			return fmt.Sprintf("queues=%d order=%d persistent=%v scsi=%v", o.maxQueues, o.maxRingPageOrder, o.persistent, o.extraRequest)
		case "negotiate":
			keys := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
				if line = strings.TrimSpace(line); line == "" {
					continue
				}
				k, v, ok := strings.Cut(line, "=")
				if !ok {
					d.Fatalf(t, "%q is not key=value", line)
				}
				keys[k] = v
			}
			c, err := negotiate(o, func(key string) (string, error) {
				v, ok := keys[key]
				switch {
				case !ok:
					return "", xen.ErrNotFound
				case v == "!eacces":
					return "", fmt.Errorf("read %s: %w", key, xen.ErrPermission)
				}
				return v, nil
			})
			if err != nil {
				return "error: " + err.Error()
			}
			return describeConnection(&c)
		}
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	})
}

func describeConnection(c *connection) string {
	var b strings.Builder
	fmt.Fprintf(&b, "abi=%s queues=%d ring-page-order=%d persistent=%v scsi=%v\n", c.abi, len(c.rings), c.order, c.persistent, c.extraRequest)
	for i, r := range c.rings {
		fmt.Fprintf(&b, "queue %d: refs=%v port=%d\n", i, r.refs, r.port)
	}
	return b.String()
}
