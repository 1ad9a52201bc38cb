package qcow2

import (
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// BenchmarkRandom4K: 4 KiB random reads (one reader, and many) and
// writes over 64 MiB, on a qcow2 image whose clusters are all allocated
// and on a raw file, in the page cache; and allocating writes on a fresh
// image.
func BenchmarkRandom4K(b *testing.B) {
	const size = 64 << 20
	open := map[string]func(b *testing.B) storage.Device{
		"raw": func(b *testing.B) storage.Device {
			d, err := storage.OpenFile(filepath.Join(b.TempDir(), "disk.raw"), storage.FileOptions{Create: size})
			if err != nil {
				b.Fatal(err)
			}
			return d
		},
		"qcow2": func(b *testing.B) storage.Device {
			p := filepath.Join(b.TempDir(), "disk.qcow2")
			if err := Create(p, size); err != nil {
				b.Fatal(err)
			}
			d, err := Open(p, Options{})
			if err != nil {
				b.Fatal(err)
			}
			return d
		},
	}
	buf := make([]byte, 4096)
	for _, kind := range []string{"raw", "qcow2"} {
		for _, op := range []string{"read", "parallel-read", "write", "allocating-write"} {
			b.Run(kind+"/"+op, func(b *testing.B) {
				d := open[kind](b)
				defer d.Close()
				if op != "allocating-write" {
					fill := make([]byte, 1<<20)
					for off := int64(0); off < size; off += 1 << 20 {
						if _, err := d.WriteAt(fill, off); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.SetBytes(4096)
				if op == "parallel-read" {
					b.SetParallelism(16) // 32 readers on 2 CPUs: a queue depth of 32
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						buf := make([]byte, 4096)
						rng := rand.New(rand.NewSource(rand.Int63()))
						for pb.Next() {
							if _, err := d.ReadAt(buf, rng.Int63n(size/4096)*4096); err != nil {
								b.Error(err)
								return
							}
						}
					})
					return
				}
				rng := rand.New(rand.NewSource(1))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := rng.Int63n(size/4096) * 4096
					var err error
					if op == "read" {
						_, err = d.ReadAt(buf, off)
					} else {
						_, err = d.WriteAt(buf, off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
