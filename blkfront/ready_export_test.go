package blkfront

// ReadyForTest is how many of the batch's requests are answered and not
// yet reaped: the event a test waits for before reaping some of them.
func (b *Batch) ReadyForTest() int { return b.readyCount() }
