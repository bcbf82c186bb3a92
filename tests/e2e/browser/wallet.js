// An injected wallet (EIP-1193, announced by EIP-6963 as wagmi and RainbowKit look for it):
// every request goes to the test's binding, which answers the account and forwards the rest to
// anvil (its dev accounts are unlocked, so personal_sign and eth_sendTransaction work there).
(() => {
  const provider = {
    isGliskDevnetWallet: true,
    request: ({ method, params }) => window.gliskWalletRpc(method, params || []),
    on() {},
    removeListener() {},
  };
  window.ethereum = provider;
  const info = {
    uuid: "6f1b2c1e-0000-4000-8000-000000000001",
    name: "GLISK devnet wallet",
    icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
    rdns: "dev.glisk.devnet",
  };
  const announce = () =>
    window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
