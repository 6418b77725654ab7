// TlsFront: OpenSSL on accepted sockets, relaying to a plain backend with poll().
#include "support/tls_front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace fetchq::testing {

TestPki make_test_pki(const std::string& dir) {
  TestPki p{dir + "/ca.pem", dir + "/server.pem", dir + "/server.key"};
  const std::string ca_key = dir + "/ca.key", csr = dir + "/server.csr", ext = dir + "/server.ext";
  const std::string q = " 2>>" + dir + "/openssl.log";
  const std::string cmds[] = {
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj '/CN=fetchq test CA' -addext basicConstraints=critical,CA:TRUE "
      "-addext keyUsage=critical,keyCertSign,cRLSign -keyout " + ca_key + " -out " + p.ca_cert + q,
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 "
      "-keyout " + p.server_key + " -out " + csr + q,
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n"
      "extendedKeyUsage=serverAuth\\n' > " + ext,
      "openssl x509 -req -in " + csr + " -CA " + p.ca_cert + " -CAkey " + ca_key +
          " -CAcreateserial -days 2 -extfile " + ext + " -out " + p.server_cert + q,
  };
  for (const auto& c : cmds) {
    if (std::system(c.c_str()) != 0) throw std::runtime_error("openssl failed: " + c);
  }
  return p;
}

struct TlsFront::Impl {
  SSL_CTX* ctx = nullptr;
  int listener = -1;
  uint16_t port = 0;
  uint16_t backend = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> failed{0};
  std::thread acceptor;
  std::mutex mu;
  std::list<std::thread> conns;

  void serve(int fd) {
    timeval tv{5, 0};  // a client that never finishes its handshake cannot hold the thread
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    int back = -1;
    if (SSL_accept(ssl) != 1) {
      ++failed;
    } else {
      back = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(backend);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(back, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) relay(ssl, fd, back);
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    if (back >= 0) ::close(back);
    ::close(fd);
  }

  void relay(SSL* ssl, int fd, int back) {
    char buf[16384];
    while (!stopping) {
      if (SSL_pending(ssl) == 0) {
        pollfd p[2] = {{fd, POLLIN, 0}, {back, POLLIN, 0}};
        if (::poll(p, 2, 100) < 0) return;
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
          ssize_t n = ::recv(back, buf, sizeof buf, 0);
          if (n <= 0) return;
          if (SSL_write(ssl, buf, static_cast<int>(n)) <= 0) return;
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      }
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) {
        if (SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ) continue;
        return;
      }
      for (int off = 0; off < n;) {
        ssize_t w = ::send(back, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) return;
        off += static_cast<int>(w);
      }
    }
  }
};

TlsFront::TlsFront(const std::string& cert_pem, const std::string& key_pem, uint16_t backend_port)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.backend = backend_port;
  m.ctx = SSL_CTX_new(TLS_server_method());
  if (!m.ctx || SSL_CTX_use_certificate_chain_file(m.ctx, cert_pem.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(m.ctx, key_pem.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (m.ctx) SSL_CTX_free(m.ctx);
    throw std::runtime_error("TlsFront: cannot load " + cert_pem + " and " + key_pem);
  }
  m.listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(m.listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(m.listener, 64) != 0 ||
      ::getsockname(m.listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(m.listener);
    SSL_CTX_free(m.ctx);
    throw std::runtime_error("TlsFront: cannot listen on 127.0.0.1");
  }
  m.port = ntohs(a.sin_port);
  m.acceptor = std::thread([&m] {
    while (!m.stopping) {
      pollfd p{m.listener, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept4(m.listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lk(m.mu);
      m.conns.emplace_back([&m, fd] { m.serve(fd); });
    }
  });
}

TlsFront::~TlsFront() {
  impl_->stopping = true;
  impl_->acceptor.join();
  for (auto& t : impl_->conns) t.join();
  ::close(impl_->listener);
  SSL_CTX_free(impl_->ctx);
}

uint16_t TlsFront::port() const { return impl_->port; }

std::string TlsFront::url(std::string_view path) const {
  return "https://127.0.0.1:" + std::to_string(impl_->port) + std::string(path);
}

int TlsFront::handshakes_failed() const { return impl_->failed; }

}  // namespace fetchq::testing
