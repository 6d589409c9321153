import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The build goes to dist/, which the weir binary embeds (the coordinator
// crate's build script names it). `npm run dev` proxies the API to a
// coordinator on the default port.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  server: { proxy: { "/v1": "http://127.0.0.1:8081" } },
});
