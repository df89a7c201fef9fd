package isakmp

// LKHKey is one LKH Key structure (RFC 6407 §5.6.3):
//
//	!   LKH ID                      !    Key Type   !    RESERVED   !
//	!                       Key Creation Date                       !
//	!                      Key Expiration Date                      !
//	!                           Key Handle                          !
//	~                            Key Data                           ~
//
// Key Type is a KEK_ALGORITHM value; Key Data carries an explicit IV before
// the key when the algorithm's mode needs one. Its length is not on the
// wire: it follows from the group's KEK policy (cipher and KEK_KEY_LENGTH),
// so the parsers below take it from the caller.
type LKHKey struct {
	ID      uint16
	KeyType KEKAlg
	Created uint32 // seconds since 1970
	Expires uint32
	Handle  uint32
	KeyData []byte
}

const lkhKeyFixedLen = 16

func (k *LKHKey) append(b []byte) []byte {
	b = appendU16(b, k.ID)
	b = append(b, byte(k.KeyType), 0)
	b = appendU32(appendU32(appendU32(b, k.Created), k.Expires), k.Handle)
	return append(b, k.KeyData...)
}

func (k *LKHKey) parse(r *reader, keyDataLen int) {
	k.ID = r.u16()
	k.KeyType = KEKAlg(r.u8())
	r.reserved(1, "RESERVED")
	k.Created, k.Expires, k.Handle = r.u32(), r.u32(), r.u32()
	k.KeyData = r.bytes(keyDataLen)
}

// LKHArray is the value of an LKH_DOWNLOAD_ARRAY or LKH_UPDATE_ARRAY
// attribute of an LKH key packet (RFC 6407 §5.6.3):
//
//	download: ! LKH Version ! # of LKH Keys (2) ! RESERVED ! LKH Keys ...
//	update:   ! LKH Version ! # of LKH Keys (2) ! RESERVED !
//	          ! LKH ID (2)  ! RESERVED2 (2) ! Key Handle (4) ! LKH Keys ...
//
// Update marks the update form, whose LKHID and Handle name the leaf the
// keys are for.
type LKHArray struct {
	Version uint8 // 1
	Update  bool
	LKHID   uint16 // update form only
	Handle  uint32 // update form only
	Keys    []LKHKey
}

// Attribute returns the array as its KD attribute.
func (a *LKHArray) Attribute() Attribute {
	t := LKHDownloadArray
	if a.Update {
		t = LKHUpdateArray
	}
	return VarAttr(t, a.Append(nil))
}

// Append appends the attribute value.
func (a *LKHArray) Append(b []byte) []byte {
	b = append(b, a.Version)
	b = append(appendU16(b, uint16(len(a.Keys))), 0)
	if a.Update {
		b = appendU32(appendU16(appendU16(b, a.LKHID), 0), a.Handle)
	}
	for i := range a.Keys {
		b = a.Keys[i].append(b)
	}
	return b
}

// ParseLKHArray decodes an LKH_DOWNLOAD_ARRAY (update false) or
// LKH_UPDATE_ARRAY value whose keys each carry keyDataLen octets of key
// data. The key count is checked against the octets present before any
// key is decoded.
func ParseLKHArray(v []byte, update bool, keyDataLen int) (*LKHArray, error) {
	r := newReader("LKH array", cloneBytes(v))
	a := &LKHArray{Update: update, Version: r.u8()}
	n := int(r.u16())
	r.reserved(1, "RESERVED")
	if update {
		a.LKHID = r.u16()
		r.reserved(2, "RESERVED2")
		a.Handle = r.u32()
	}
	if r.err == nil && keyDataLen < 0 {
		r.fail("negative key data length %d", keyDataLen)
	}
	if r.err == nil && n*(lkhKeyFixedLen+keyDataLen) != r.left() {
		r.fail("%d LKH keys of %d octets need %d octets, %d present", n, lkhKeyFixedLen+keyDataLen,
			n*(lkhKeyFixedLen+keyDataLen), r.left())
	}
	for i := 0; i < n && r.err == nil; i++ {
		var k LKHKey
		k.parse(r, keyDataLen)
		a.Keys = append(a.Keys, k)
	}
	return a, r.done()
}
