package vscsiback

// Concurrent is concurrent, for the external tests.
var Concurrent = concurrent
