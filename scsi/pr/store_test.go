package pr_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) pr.Store { return pr.NewMemoryStore() })
}

func TestFileStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) pr.Store { return &pr.FileStore{Dir: t.TempDir()} })
}
