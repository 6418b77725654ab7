// TLS in front of a plain test server: accepts TLS on 127.0.0.1 (a kernel-chosen port) with a
// given certificate and key, and relays the decrypted bytes to 127.0.0.1:backend_port, so the
// misbehaving TestServer can be reached over https without learning TLS itself.
//
// make_test_pki() makes a throw-away CA and a server certificate for 127.0.0.1 and localhost
// with the openssl command-line tool.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace fetchq::testing {

struct TestPki {
  std::string ca_cert;      // PEM of the CA that signed the server certificate
  std::string server_cert;  // PEM, for IP 127.0.0.1 and DNS localhost
  std::string server_key;
};
// Writes the files into `dir`. Throws std::runtime_error when openssl fails.
TestPki make_test_pki(const std::string& dir);

class TlsFront {
 public:
  // Throws std::runtime_error when the certificate or key cannot be loaded.
  TlsFront(const std::string& cert_pem, const std::string& key_pem, uint16_t backend_port);
  ~TlsFront();  // closes every connection and joins every thread
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  uint16_t port() const;
  std::string url(std::string_view path) const;  // "https://127.0.0.1:PORT" + path
  int handshakes_failed() const;                  // TLS handshakes a client gave up on

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fetchq::testing
