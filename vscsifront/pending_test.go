package vscsifront

import (
	"slices"
	"testing"
)

// TestIDQueue: the pending queue keeps its order through pushes at
// either end, pops and removals, across the end of its buffer.
func TestIDQueue(t *testing.T) {
	type op struct {
		do string // back, front, pop, drop (ids over 10), reset
		id int
	}
	for _, tc := range []struct {
		name string
		ops  []op
		want []int
	}{
		{"back in order", []op{{"back", 1}, {"back", 2}, {"back", 3}}, []int{1, 2, 3}},
		{"front ahead", []op{{"back", 3}, {"front", 2}, {"front", 1}}, []int{1, 2, 3}},
		{"pop oldest", []op{{"back", 1}, {"back", 2}, {"pop", 1}, {"back", 3}}, []int{2, 3}},
		{"wraps at the end", []op{{"back", 1}, {"back", 2}, {"back", 3}, {"pop", 1}, {"pop", 2}, {"back", 4}, {"back", 5}, {"back", 6}}, []int{3, 4, 5, 6}},
		{"front wraps before the start", []op{{"front", 2}, {"front", 1}, {"back", 3}}, []int{1, 2, 3}},
		{"drop keeps order across the wrap", []op{{"back", 1}, {"back", 2}, {"pop", 1}, {"pop", 2}, {"back", 11}, {"back", 3}, {"back", 12}, {"back", 4}, {"drop", 0}}, []int{3, 4}},
		{"drop all", []op{{"back", 11}, {"back", 12}, {"drop", 0}, {"back", 1}}, []int{1}},
		{"full", []op{{"back", 1}, {"back", 2}, {"back", 3}, {"front", 0}}, []int{0, 1, 2, 3}},
		{"reset", []op{{"back", 1}, {"back", 2}, {"reset", 0}, {"back", 3}}, []int{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newIDQueue(4)
			for _, o := range tc.ops {
				switch o.do {
				case "back":
					q.pushBack(o.id)
				case "front":
					q.pushFront(o.id)
				case "pop":
					if got := q.popFront(); got != o.id {
						t.Fatalf("pop: %d, want %d", got, o.id)
					}
				case "drop":
					q.removeIf(func(id int) bool { return id > 10 })
				case "reset":
					q.reset()
				}
			}
			var got []int
			for i := range q.len() {
				got = append(got, q.at(i))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("queue %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("over its slots", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("a fifth id in a queue of four did not panic")
			}
		}()
		q := newIDQueue(4)
		for id := range 5 {
			q.pushBack(id)
		}
	})
}
