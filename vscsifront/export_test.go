package vscsifront

// Slots counts the command slots in each state, by name, and reports
// whether a task management request is on the ring.
func (v *Vhost) Slots() (states map[string]int, tmfOnRing bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	states = map[string]int{}
	for i := range v.slots {
		states[v.slots[i].state.String()]++
	}
	return states, v.tmfBusy
}

// CommandSlots is the number of command slots.
func (v *Vhost) CommandSlots() int { return len(v.slots) }

// TMFRqID is the rqid of task management requests.
func (v *Vhost) TMFRqID() int { return v.tmfID }
