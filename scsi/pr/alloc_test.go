package pr

import (
	"testing"

	"github.com/xenblk/xenblk/scsi"
)

// TestTakeAttentionAllocatesNothing: every command asks for its nexus's
// unit attention; the answer "none" costs no allocation, also while other
// nexuses still have attentions waiting (a registrant that sends nothing).
func TestTakeAttentionAllocatesNothing(t *testing.T) {
	var s State
	waiting := scsi.Nexus{Dom: 7, Device: "xvdb"}
	s.attention(waiting, scsi.Code{})
	asker := scsi.Nexus{Dom: 12, Device: "/local/domain/0/backend/xenblk/12/51712"}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := s.takeAttention(asker); ok {
			t.Fatal("an attention for a nexus that has none")
		}
	}); n != 0 {
		t.Fatalf("takeAttention with none for the asker: %v allocations", n)
	}
	if _, ok := s.takeAttention(waiting); !ok {
		t.Fatal("the waiting nexus's attention is lost")
	}
	if len(s.Attentions) != 0 {
		t.Fatalf("attentions left: %v", s.Attentions)
	}
}
