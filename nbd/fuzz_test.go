package nbd

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

func FuzzDecodeRequest(f *testing.F) {
	var b [requestSize]byte
	encodeRequest(&b, request{cmd: cmdWrite, flags: cmdFlagFUA, handle: 7, offset: 4096, length: 512})
	f.Add(b[:])
	f.Add(make([]byte, requestSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		var b [requestSize]byte
		copy(b[:], in)
		r, err := decodeRequest(&b)
		if err != nil {
			return
		}
		var back [requestSize]byte
		encodeRequest(&back, r)
		if back != b {
			t.Fatalf("request does not round-trip: %x -> %+v -> %x", b, r, back)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	var b [replySize]byte
	encodeReply(&b, EIO, 1<<32|3)
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		var b [replySize]byte
		copy(b[:], in)
		errno, handle, err := decodeReply(&b)
		if err != nil {
			return
		}
		var back [replySize]byte
		encodeReply(&back, errno, handle)
		if back != b {
			t.Fatalf("reply does not round-trip: %x", b)
		}
	})
}

func FuzzDecodeInfoRequest(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 1, 0, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := decodeInfoRequest(in)
		if err != nil {
			return
		}
		if 4+len(r.name)+2+2*len(r.infos) != len(in) {
			t.Fatalf("decoded %+v from %d bytes", r, len(in))
		}
	})
}

func FuzzDecodeChunkHeader(f *testing.F) {
	var b [chunkHeaderSize]byte
	encodeChunkHeader(&b, chunkHeader{flags: chunkFlagDone, typ: chunkOffsetData, handle: 9, length: 4104})
	f.Add(b[:])
	f.Add(make([]byte, chunkHeaderSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		var b [chunkHeaderSize]byte
		copy(b[:], in)
		h, err := decodeChunkHeader(&b)
		if err != nil {
			return
		}
		var back [chunkHeaderSize]byte
		encodeChunkHeader(&back, h)
		if back != b {
			t.Fatalf("chunk header does not round-trip: %x -> %+v -> %x", b, h, back)
		}
	})
}

func FuzzDecodeMetaRequest(f *testing.F) {
	f.Add(encodeMetaRequest(metaRequest{name: "d", queries: []string{contextAllocation, "base:"}}))
	f.Add(encodeMetaRequest(metaRequest{}))
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := decodeMetaRequest(in)
		if err != nil {
			return
		}
		if back := encodeMetaRequest(r); string(back) != string(in) {
			t.Fatalf("meta request does not round-trip: %x -> %+v -> %x", in, r, back)
		}
	})
}

// serverSeed is a valid client stream: flags, OPT_LIST, OPT_INFO,
// structured replies, meta contexts, OPT_GO, then a write, a read, zeroes,
// a trim, a flush, block status, a cache and a disconnect.
func serverSeed() []byte {
	b := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	opt := func(o uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, magicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	opt(optList, nil)
	info := []byte{0, 0, 0, 1, 'd', 0, 2, 0, 1, 0, 2}
	opt(optInfo, info)
	opt(optStructuredReply, nil)
	opt(optListMetaContext, encodeMetaRequest(metaRequest{name: "d"}))
	opt(optSetMetaContext, encodeMetaRequest(metaRequest{name: "d", queries: []string{contextAllocation}}))
	opt(optGo, info)
	req := func(r request, payload []byte) {
		var h [requestSize]byte
		encodeRequest(&h, r)
		b = append(b, h[:]...)
		b = append(b, payload...)
	}
	req(request{cmd: cmdWrite, flags: cmdFlagFUA, handle: 1, offset: 10, length: 4}, []byte("abcd"))
	req(request{cmd: cmdRead, handle: 2, offset: 8, length: 8}, nil)
	req(request{cmd: cmdWriteZeroes, flags: cmdFlagNoHole, handle: 3, offset: 0, length: 100}, nil)
	req(request{cmd: cmdTrim, handle: 4, offset: 4000, length: 200}, nil)
	req(request{cmd: cmdFlush, handle: 5}, nil)
	req(request{cmd: cmdBlockStatus, handle: 7, offset: 100, length: 3000}, nil)
	req(request{cmd: cmdBlockStatus, flags: cmdFlagReqOne, handle: 8, length: 4096}, nil)
	req(request{cmd: cmdCache, handle: 9, length: 4096}, nil)
	req(request{cmd: cmdDisc, handle: 6}, nil)
	return b
}

// FuzzServerConn feeds arbitrary client bytes to a server connection: it
// must never panic or hang.
func FuzzServerConn(f *testing.F) {
	seed := serverSeed()
	f.Add(seed)
	f.Add(seed[:40])
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Exports: []Export{{Name: "d", Device: newMemDev(4096)}}, HandshakeTimeout: 5 * time.Second}
		client, server := net.Pipe()
		go io.Copy(io.Discard, client)
		go func() {
			client.Write(in)
			client.Close()
		}()
		s.ServeConn(server)
	})
}

// clientSeed is a server's side of a successful handshake (structured
// replies and base:allocation agreed, then OPT_GO) and of the replies to
// a 16-byte read at 0: a hole chunk, then a data chunk ending the reply.
func clientSeed() []byte {
	b := binary.BigEndian.AppendUint64(nil, magicNBD)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint16(b, flagFixedNewstyle|flagNoZeroes)
	rep := func(opt, typ uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, magicOptReply)
		b = binary.BigEndian.AppendUint32(b, opt)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	rep(optStructuredReply, repAck, nil)
	rep(optSetMetaContext, repMetaContext, append([]byte{0, 0, 0, 7}, contextAllocation...))
	rep(optSetMetaContext, repAck, nil)
	rep(optGo, repInfo, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 5})
	rep(optGo, repInfo, []byte{0, 3, 0, 0, 0, 1, 0, 0, 16, 0, 0, 1, 0, 0})
	rep(optGo, repAck, nil)
	return append(b, readChunks(1<<32)...)
}

// readChunks answers a 16-byte read at 0 with handle: 8 bytes of hole,
// then 8 bytes "abcdefgh".
func readChunks(handle uint64) []byte {
	var h [chunkHeaderSize]byte
	encodeChunkHeader(&h, chunkHeader{typ: chunkOffsetHole, handle: handle, length: 12})
	b := append(h[:], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8)
	encodeChunkHeader(&h, chunkHeader{flags: chunkFlagDone, typ: chunkOffsetData, handle: handle, length: 16})
	b = append(b, h[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 8)
	return append(b, "abcdefgh"...)
}

// FuzzClient feeds arbitrary server bytes to the client's handshake and
// reply reader: errors are fine, panics and hangs are not.
func FuzzClient(f *testing.F) {
	seed := clientSeed()
	f.Add(seed)
	f.Add(seed[:18])
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		go io.Copy(io.Discard, server)
		go func() {
			server.Write(in)
			server.Close()
		}()
		cl, err := NewClient(client, "d")
		if err != nil {
			client.Close()
			return
		}
		if cl.Size() >= 16 {
			cl.ReadAt(make([]byte, 16), 0)
			cl.Map(0, 16)
		}
		cl.Close()
	})
}
