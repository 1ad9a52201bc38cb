package nbd

import "testing"

// cover keeps a READ's delivered ranges disjoint: chunks in any order
// merge into spans, and a chunk over any byte already delivered is
// refused.
func TestCoverRefusesOverlaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks [][2]uint32 // at, n
		ok     []bool
		spans  []span
	}{
		{"in order", [][2]uint32{{0, 4}, {4, 4}, {8, 8}}, []bool{true, true, true}, []span{{0, 16}}},
		{"reversed", [][2]uint32{{8, 8}, {4, 4}, {0, 4}}, []bool{true, true, true}, []span{{0, 16}}},
		{"gap filled last", [][2]uint32{{0, 4}, {12, 4}, {4, 8}}, []bool{true, true, true}, []span{{0, 16}}},
		{"apart", [][2]uint32{{12, 4}, {0, 4}}, []bool{true, true}, []span{{0, 4}, {12, 16}}},
		{"same twice", [][2]uint32{{0, 8}, {0, 8}}, []bool{true, false}, []span{{0, 8}}},
		{"tail overlap", [][2]uint32{{0, 8}, {7, 2}}, []bool{true, false}, []span{{0, 8}}},
		{"head overlap", [][2]uint32{{8, 8}, {4, 5}}, []bool{true, false}, []span{{8, 16}}},
		{"inside", [][2]uint32{{0, 16}, {4, 4}}, []bool{true, false}, []span{{0, 16}}},
		{"over two", [][2]uint32{{0, 4}, {8, 4}, {2, 8}}, []bool{true, true, false}, []span{{0, 4}, {8, 12}}},
		{"many apart", [][2]uint32{{0, 1}, {2, 1}, {4, 1}, {6, 1}, {8, 1}, {10, 1}, {5, 1}}, []bool{true, true, true, true, true, true, true},
			[]span{{0, 1}, {2, 3}, {4, 7}, {8, 9}, {10, 11}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c call
			c.spans = c.spanBuf[:0]
			for i, ch := range tc.chunks {
				if got := c.cover(ch[0], ch[1]); got != tc.ok[i] {
					t.Fatalf("chunk %d %v: cover = %v, want %v (spans %v)", i, ch, got, tc.ok[i], c.spans)
				}
			}
			if len(c.spans) != len(tc.spans) {
				t.Fatalf("spans %v, want %v", c.spans, tc.spans)
			}
			for i := range c.spans {
				if c.spans[i] != tc.spans[i] {
					t.Fatalf("spans %v, want %v", c.spans, tc.spans)
				}
			}
		})
	}
}
